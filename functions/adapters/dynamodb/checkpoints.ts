import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { FolderState } from '../../core/model';
import type { FolderCheckpoints, Lease } from '../../core/ports';
import { readOrFail, type IndexTable } from './fencing';
import { keys } from './keys';

/** IMAP folder checkpoints: read strongly consistent, written fenced. */
export class DynamoFolderCheckpoints implements FolderCheckpoints {
  constructor(private readonly table: IndexTable) {}

  async getFolderState(sourceId: string, folder: string): Promise<FolderState | undefined> {
    const { Item } = await readOrFail('get', () =>
      this.table.db.send(
        new GetCommand({
          TableName: this.table.tableName,
          Key: { PK: keys.sourcePk(sourceId), SK: keys.folderStateSk(folder) },
          ConsistentRead: true,
        }),
      ),
    );
    if (!Item) return undefined;
    return {
      folder,
      uidValidity: String(Item.uidValidity),
      committedThroughUid: Number(Item.committedThroughUid),
      uidNext: Number(Item.uidNext),
      highestModseq: Item.highestModseq as string | undefined,
      ...(Item.generation ? { generation: Number(Item.generation) } : {}),
    };
  }

  async saveFolderState(lease: Lease, state: FolderState): Promise<void> {
    await this.table.transact(lease, [
      {
        Put: {
          TableName: this.table.tableName,
          Item: {
            PK: keys.sourcePk(lease.sourceId),
            SK: keys.folderStateSk(state.folder),
            type: 'folder-state',
            ...state,
          },
        },
      },
      this.table.leaseCheck(lease),
    ]);
  }
}
