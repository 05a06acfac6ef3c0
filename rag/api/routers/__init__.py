"""One router per feature; each is thin: check the caller, call the service, shape the reply."""
