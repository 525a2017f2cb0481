//! Baton backend agent.
