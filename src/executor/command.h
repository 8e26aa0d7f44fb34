/*
 * command.h
 *		Running one shell command for a session inside the sandbox.
 */
#ifndef SB_COMMAND_H
#define SB_COMMAND_H

#include "../common/protocol.h"

/*
 * sb_run_command runs req->command with bash in the session's cwd and
 * environment and fills *res.  It never exits the process; failures of the
 * sandbox itself come back as SB_STATUS_ERROR.
 */
extern void sb_run_command(const SbExecRequest *req, SbExecResult *res);

#endif							/* SB_COMMAND_H */
