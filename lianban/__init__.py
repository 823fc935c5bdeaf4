"""The application: settings, the stack of roles, the command line and the demo.

The only package that imports both the router and the adapters."""
