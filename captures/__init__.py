"""Packet captures: scapy dissectors for ASAP/ENRP and the pcap conformance checker."""
