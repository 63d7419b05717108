"""Algorithms of the pipeline, free of rclpy so they can be used and tested without ROS."""
