"""NIR export and import of the spiking layers.

NIR, the Neuromorphic Intermediate Representation (Pedersen et al., Nature Communications 15,
8122, 2024; the ``nir`` package), describes a network as a graph of continuous-time nodes
(``Conv2d``, ``Affine``, ``CubaLIF``, ``LIF``, ``IF``, ...). Libraries such as snnTorch, Norse,
sinabs and Rockpool read and write it. This module maps the Loihi CUBA layers that the runtime
runs (netx HDF5, see docs/snn_runtime.md) to NIR and back; docs/nir.md gives the mapping and every
approximation.

Both directions go through :class:`SpikingLayer`, Loihi's per-step equations with real numbers
(``u = (1 - i_decay) u + W s``, ``v = (1 - v_decay) v + u + bias``, spike when ``v > threshold``,
then ``v = 0``). A NIR time constant ``tau`` becomes the per-step fraction ``dt / tau`` for a
step of ``dt`` seconds; NIR itself has no time step, so ``dt`` is written into the graph's
metadata on export and must be known on import (the metadata, or the caller).

Modules: layers.py (SpikingLayer, constants, the real-valued reference simulation), export.py
(netx -> NIR), parse.py (NIR -> layers), fixed_point.py (layers -> netx), bundle.py (NIR file ->
bundle). ``nir``, ``h5py`` and ``torch`` are imported inside the functions that need them.
"""
