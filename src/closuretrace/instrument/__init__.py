"""Instrumentation: what is wrapped (factories, cycle-ending functions, Keras compile/fit)."""
