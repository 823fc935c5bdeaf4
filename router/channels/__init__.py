"""How results reach the platform besides the HTTP API: callbacks and the front-end
machine (前置机) file drop."""
