"""Prefect flows of parkcast: the daily forecast job and the retrain job."""
