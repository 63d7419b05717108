"""Stage 1, sources: where the driver's packets come from (dv-processing files, cameras and network
streams, rosbag2 recordings, the synthetic set) and pacing them on sensor time."""
