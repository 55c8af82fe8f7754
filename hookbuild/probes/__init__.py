"""Uprobe programs for a binary's hookpoints: bpftrace and bcc scripts, and trace_all.sh for a cluster."""
