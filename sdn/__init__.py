"""SDN control: os-ken apps steering service function chains, the ALTO server, path computation."""
