"""Bytes on the wire and on disk: tensor and spike payloads (Isaac ROS TensorList compatible) and
rosbag2 recordings (MCAP, sqlite3)."""
