"""A party's commands, one module per group: keys, letters, watch, verify. They use the client,
the keyring, the timeline and the protocol modules, never the courier's."""
