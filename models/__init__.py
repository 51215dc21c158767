"""Keras model code of parkcast: the dropout MLP and its hyper-parameters."""
