"""rosbag2 recordings (MCAP and sqlite3) without ROS, on the pure-Python ``rosbags`` library:
message types (msgtypes), writing (write), converting other recordings (convert), reading (read,
through source and storage), the bounds on reading (limits) and damaged bags (recover)."""
