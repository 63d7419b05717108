"""Stage 2, the spiking layers: netx HDF5 reading, the Loihi-exact native runtime and its op
counting, Lava (simulation and Loihi 2), the on-chip energy profiler."""
