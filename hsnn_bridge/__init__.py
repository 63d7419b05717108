"""Accumulator bridge between the spiking and the non-spiking stages (ROS node)."""
