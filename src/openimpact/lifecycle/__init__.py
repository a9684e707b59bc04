"""The impact lifecycle: Initiated → Donation Received → Transferred to Partner → Completed."""
