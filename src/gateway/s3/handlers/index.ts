/**
 * Operation name → handler, one handler per S3 operation (operation names as in the AWS API).
 */
import type { S3Handler } from '../context.ts'
import { createBucket, deleteBucket, getBucketLocation, headBucket, listBuckets } from './buckets.ts'
import { listObjects, listObjectsV2 } from './list.ts'
import { abortMultipartUpload, completeMultipartUpload, createMultipartUpload, listMultipartUploads, listParts, uploadPart, uploadPartCopy } from './multipart.ts'
import { copyObject, deleteObject, deleteObjects, getObject, headObject, putObject } from './objects.ts'
import { deleteObjectTagging, getObjectTagging, putObjectTagging } from './tagging.ts'

export const S3_HANDLERS: Record<string, S3Handler> = {
  ListBuckets: listBuckets,
  CreateBucket: createBucket,
  HeadBucket: headBucket,
  DeleteBucket: deleteBucket,
  GetBucketLocation: getBucketLocation,
  ListObjects: listObjects,
  ListObjectsV2: listObjectsV2,
  ListMultipartUploads: listMultipartUploads,
  DeleteObjects: deleteObjects,
  PutObject: putObject,
  CopyObject: copyObject,
  GetObject: getObject,
  HeadObject: headObject,
  DeleteObject: deleteObject,
  CreateMultipartUpload: createMultipartUpload,
  UploadPart: uploadPart,
  UploadPartCopy: uploadPartCopy,
  CompleteMultipartUpload: completeMultipartUpload,
  AbortMultipartUpload: abortMultipartUpload,
  ListParts: listParts,
  GetObjectTagging: getObjectTagging,
  PutObjectTagging: putObjectTagging,
  DeleteObjectTagging: deleteObjectTagging
}
