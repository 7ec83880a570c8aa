#!/bin/sh
# Kubo runs /container-init.d/*.sh after `ipfs init`, before the daemon starts (first start only).
# Private swarm: nothing may reach the public IPFS network, so no bootstrap peers, no DHT
# (Routing.Type none), no mDNS, no relays, no NAT port mapping. Nodes find each other's content
# because swarm-node connects its Kubo to the publisher's Kubo (addresses ride in the announcement).
set -eu
ipfs bootstrap rm --all
ipfs config --json Bootstrap '[]'
ipfs config Routing.Type none
ipfs config --json Discovery.MDNS.Enabled false
ipfs config --json Swarm.DisableNatPortMap true
ipfs config --json Swarm.RelayClient.Enabled false
ipfs config --json Swarm.RelayService.Enabled false
ipfs config --json AutoNAT '{"ServiceMode": "disabled"}'
# 0.0.0.0 is the container's own interfaces on the internal compose network (no published ports):
# the swarm node in the next container must reach the RPC API and the other Kubos the swarm port.
ipfs config --json Addresses.Swarm '["/ip4/0.0.0.0/tcp/4001"]'
ipfs config Addresses.API /ip4/0.0.0.0/tcp/5001
ipfs config Addresses.Gateway /ip4/127.0.0.1/tcp/8080
