"""Zero-trust foundations: workload identities, the certificate authority, and which
PeerAuthentication and AuthorizationPolicy objects govern a workload.

Pure of the server and of Envoy: nothing here listens, and only the CA touches disk
(its own directory). Envoy configuration is built from these values elsewhere.
"""
