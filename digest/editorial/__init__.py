"""The editorial loop around an issue: its history, review (approve / hold), the
preflight report before a real send, the notices that ask editors to review, and the
scheduled decisions (freeze a draft for review, send it when it may go)."""
