"""Energy figures per stage and per inference: measured (power meters) or modelled (published
per-operation costs), and how each is labelled."""
