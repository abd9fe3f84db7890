"""The HTTP routes of `bastion serve`, one router per concern, each reading its `GuardedServer` from the app.

`v2`: the Open Inference Protocol v2 routes (health, metadata, infer, with version routes);
`predict`: the plain image upload; `ops`: metrics, status and the admin routes. `access` holds what
they share: the key check, the rate limit and the guard call.
"""
