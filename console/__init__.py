"""The trainers' live console (issue 19): a French web page over the simulators' control API."""
