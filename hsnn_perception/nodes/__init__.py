"""Thin rclpy adapters around hsnn_perception.core."""
