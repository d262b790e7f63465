"""Business events, state machines, dirt injection and ground truth of the simulated enterprise."""
