"""`channel exercise board`: the control cell's board in the browser, on the control machine.

A process of its own, bound to 127.0.0.1 and guarded like the desk (channel/party/web): it
follows a live run by tailing its event log and polling the control API's status, and sends the
control cell's commands through the control client. `follow` holds what it knows (pure),
`lanes` draws the letters as swim lanes, `app` serves the pages.
"""
