"""The project's exception bases: one per concern, all under :class:`HsnnError`.

A node or a tool catches a concern by name (``except ModelError``) where it knows what can go
wrong there; an exception that is no :class:`HsnnError` is a bug or a third-party failure that no
check caught, and only the deliberate last lines of defence (the nodes' guarded callbacks, the
spin loop) catch those.

Each concrete error keeps the built-in base it always had (``ValueError`` for bad input,
``RuntimeError`` for a failed run, ``ImportError`` for a missing package), so code that catches
the built-in still catches it: ``class BundleError(ModelError, ValueError)``.
"""

from __future__ import annotations


class HsnnError(Exception):
    """An error this project raises on purpose, with a message that says what is wrong."""


class ConfigurationError(HsnnError):
    """A name, parameter or command-line argument that cannot be used: registries, node
    parameters, the command-line tools."""


class ModelError(HsnnError):
    """Model bundles and model files: reading, checking, building, exporting, converting."""


class SnnError(HsnnError):
    """Running the spiking layers: the SNN runtimes, Lava, the Loihi energy profiler."""


class ClassifierError(HsnnError):
    """Running the non-spiking layers: classifier backends, the read-out, the MAC count."""


class EventError(HsnnError):
    """Event data: event codecs, cutting events into windows, event filters, the synthetic
    event generator."""


class MessageError(HsnnError):
    """What received messages carry: tensors (the tensor codec, the spike codec) and the fields
    the nodes check."""


class EventSourceError(HsnnError):
    """Where events come from: recordings, cameras, network streams, training datasets."""


class RecordingError(HsnnError):
    """rosbag2 recordings: reading, writing, recovering."""


class EnergyAccountingError(HsnnError):
    """Energy figures, energy models and power meters."""


class ExperimentError(HsnnError):
    """Training and evaluation runs: data, models and settings that do not fit together, saved
    results that cannot be read."""


class OrchestrationError(HsnnError):
    """Running the ROS graph: bringing nodes up, replaying over DDS, a node that died."""
