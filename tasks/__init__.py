"""Prefect tasks of parkcast: ingest, features, train, evaluate, promote, predict."""
