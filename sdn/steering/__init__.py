"""SFC steering: the os-ken application that makes chains carry traffic across domains.

`netmap` (the network as the testbed describes it), `flows` (pure: paths to OpenFlow rules),
`chains` (where each chain should be: platform ranking + RSerPool instances), `app` (os-ken),
`rest` (the REST view of installed chains).
"""
