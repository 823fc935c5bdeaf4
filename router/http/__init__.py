"""The HTTP side of the router: the intake API, the manual work queue, the ops page."""
