"""Evaluation of hybrid SNN/ANN models on event bags: offline runs, reports, model families."""
