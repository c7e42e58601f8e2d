"""The deliverability auditor: what receivers check about a domain, checked first by us."""
