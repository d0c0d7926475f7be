"""The RSerPool implementation: shared protocol code (wire codec, later transports) and
the registrar, pool element and pool user built on it."""
