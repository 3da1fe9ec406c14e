"""Wire formats: translation between providers' JSON shapes and the canonical types.

A dialect (client side) and a provider (upstream side) of the same family share one codec
here, so a request parsed from a client and written to an upstream uses one mapping.
"""
