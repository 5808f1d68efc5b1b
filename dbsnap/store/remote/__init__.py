"""The remote wing of the store: snapshots kept in an S3-compatible object store.

``s3`` is the only module that talks to the object store (boto3 stays there), ``crypt`` the only one that
encrypts (cryptography stays there), and ``snapshots`` lays snapshots out on the remote, write-once and whole.
"""
