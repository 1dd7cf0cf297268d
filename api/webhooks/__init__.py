"""The webhook edge, in one room: the endpoint, signatures, the inbox writer, the secrets cache.

The wire formats (body → facts) live below, in :mod:`adapters.gateways`, because the
workers read stored bodies with them too.
"""
