"""The HTTP side of the router: one APIRouter per resource (`bundles`, `materials`,
`catalog`, `manual`, `ops`) assembled by `app.create_app`; `services` hands the routes
what they work with, `auth` says who may call, `problems` how a refusal looks."""
