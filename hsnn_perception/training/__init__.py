"""Training and export of hybrid SNN-ANN models (plain Python, no rclpy)."""
