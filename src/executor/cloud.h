/*
 * cloud.h
 *		The executor's cloud mode: one execution of a Cloud Run Job task,
 *		with the request, the session's state, its workspace snapshot and
 *		the result kept in a GCS bucket.
 */
#ifndef SB_CLOUD_H
#define SB_CLOUD_H

/*
 * sb_cloud_main runs `cloudrun-sandbox-executor cloud BUCKET REQUEST_OBJECT`;
 * argv[0] is "cloud".  It returns the process's exit status: 0 whenever a
 * result object exists for the request when it returns, 1 when none could
 * be written, 2 for a usage error.
 */
extern int sb_cloud_main(int argc, char **argv);

#endif /* SB_CLOUD_H */
