"""The end-to-end benchmark (`make bench`): Lianban on RabbitMQ and PostgreSQL, its
Celery canvas peer, the raw broker's limit and how cost grows. See bench/README.md."""
