"""Operators: the BK scan and its backends. Nothing here knows of models, configs or training."""
