"""Stage 1, events: the event_camera_msgs codecs (mono, evt3, libcaer, libcaer_cmp), the stream
decoder, windowing into frames (binning), filters and input mapping, the synthetic DVS source."""
