"""The review console: server-rendered pages for reviewers under /console/."""
