"""`swarm-bootstrap`: a rendezvous + gossipsub relay peer. It helps peers meet; it decides nothing."""
