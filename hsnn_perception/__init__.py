# Kept to one line on purpose: in an install tree rosidl's generated __init__.py replaces this one.
# In a source checkout this lets `hsnn_perception.msg` come from the colcon install tree.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
