"""Plans and the bonus impacts they grant each month (issue 11)."""
