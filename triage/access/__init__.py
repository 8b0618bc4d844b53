"""Access: users, API keys, and the policy of who may do what on which cases."""
