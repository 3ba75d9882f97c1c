"""Built-in workloads: the seed's example ported to Keras 3, on data that needs no network."""
