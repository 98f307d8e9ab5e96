"""Pure types shared by every stage: no I/O, no SDKs, nothing else of ours."""
