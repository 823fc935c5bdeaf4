"""What operators look at and act on: metrics, supervision figures, queues, dead
letters, broker definitions."""
