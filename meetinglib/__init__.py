"""meetinglib: the toolkit behind the weekly order-processing review meeting."""
__version__ = "0.1.0"
