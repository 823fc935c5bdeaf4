"""Department systems on loopback (SOAP and REST), for demos, development and the
conformance suite: a product feature, not test code."""
